"""The user the official Airflow image runs as: its files, and what it writes, belong to it.

Shared by AirflowRelease's pod security and LogStorage's logs volume (whose folder it owns).
"""

AIRFLOW_UID = 50000
