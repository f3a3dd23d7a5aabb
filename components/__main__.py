"""The component package's provider host: `pulumi package add` runs this folder as a plugin.

It serves AirflowPlatform (schema inferred from its annotated args and outputs, with the
credential inputs marked secret; see components/provider.py) to YAML, TypeScript, Go, C#,
Java and Python programs.
"""

import importlib
import sys
from pathlib import Path

package = __package__
if not package:
    # Run as a folder (`python components/`), as the plugin runtime does: the folder itself is
    # sys.path[0], where our modules would shadow the standard library's (platform.py). Import the
    # package from its parent instead, under the folder's own name (`components` in the
    # repository, `pulumi_airflow_k8s` installed).
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    package = here.name

serve = importlib.import_module(f"{package}.provider").serve

if __name__ == "__main__":
    serve()
