"""Write digits.npz: scikit-learn's 8x8 digits as uint8 images, in hpstudy's .npz layout.

    python make_data.py      # then: hpstudy optimize --study study.toml
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

digits = load_digits()
images = np.round(digits.images * 255 / 16).astype(np.uint8)[:, None]  # [N, 1, 8, 8]
x_train, x_test, y_train, y_test = train_test_split(
    images, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
np.savez("digits.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
         classes=np.array([str(d) for d in range(10)]))
print(f"digits.npz: {len(x_train)} training and {len(x_test)} test images")
