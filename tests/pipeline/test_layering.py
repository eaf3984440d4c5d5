"""pipeline/ is the science: importing all of it loads no Nipype, no pybids and no workflows."""

import subprocess
import sys

FORBIDDEN = ("nipype", "bids", "workflows")

_SCRIPT = f"""
import importlib, pkgutil, sys
import pipeline
for module in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
    importlib.import_module(module.name)
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({FORBIDDEN!r}))
print(",".join(loaded))
"""


def test_pipeline_imports_no_workflow_layer():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          check=True, timeout=300)
    assert proc.stdout.strip() == "", f"pipeline imports {proc.stdout.strip()}"
