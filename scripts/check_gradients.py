"""Audit the hand-written gradients against tf.GradientTape and finite differences.

python scripts/check_gradients.py                      # the article's net, 8 test images
python scripts/check_gradients.py --bias-grad exact    # the true db1: everything matches
python scripts/check_gradients.py --model nets.py:net  # a Sequential of your own
python scripts/check_gradients.py --from runs/RUN      # a training run's saved weights
python scripts/check_gradients.py --help               # every option
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone, no install

from tfhybrid.audit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
