"""Train the source article's CNN with hybrid TensorFlow/NumPy backpropagation.

python scripts/train.py                 # the article's program: 10 epochs, test accuracy
python scripts/train.py --help          # every option
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
