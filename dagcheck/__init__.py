"""dags-check: will these DAGs run on the Airflow this stack deploys?

Three steps, each a module, one report (`python -m dagcheck`, `./run.sh dags-check`):

1. `ruff_step`: ruff's Airflow rules (the AIR family, with the Airflow 3 migration rules
   AIR3xx, in preview where ruff has them there), with ruff's fix where it has one.
2. `dagbag_step`: a DagBag load in the Airflow virtualenv (`load.py`, run by
   `.venv-dags/bin/python`), reporting import errors as the dag-processor would.
3. `platform`: the stack's own rules, from the stack config parsed by
   `components.platform.config.parse_stack`: pod namespaces the stack grants, service accounts it
   creates, pinned images, Secrets from the team's own namespace, Pod Security, Spark job
   namespaces and accounts.

Every finding is one line `file:line: LEVEL [step] what breaks — fix`.
"""
