"""skinclf: config-driven training of binary skin-lesion classifiers (benign vs malignant)."""

import os

# albumentations checks PyPI for a newer version at import; this project runs offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.2.0"
