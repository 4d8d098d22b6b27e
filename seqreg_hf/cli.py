"""`python -m seqreg_hf.cli COMMAND ...` is the `seqreg-hf` console script (the spelling torchrun and accelerate
launch need: they start a module, not a script). The command table lives in `seqreg_hf_cli`."""

import sys

from seqreg_hf_cli import main, run_command  # noqa: F401  (run_command: the Python door to one command)

if __name__ == "__main__":
    sys.exit(main())
