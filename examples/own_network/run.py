"""The same study from Python (a notebook works the same way).

    python make_data.py && python run.py
"""

from mynet import SmallCNN

import hpstudy

result = hpstudy.optimize("study.toml", trials=4, architecture=SmallCNN,
                          overrides={"train.epochs": 5})
print(result.champion, "test accuracy", result.test_acc)
print(result.trials[["number", "state", "val_loss", "params_channels", "params_act"]])
