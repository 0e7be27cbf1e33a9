"""Train the example iris classifier and save it as model.pkl next to this file."""

import pickle
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500, random_state=0).fit(X, y)
out = Path(__file__).with_name("model.pkl")
out.write_bytes(pickle.dumps(model, protocol=5))
print(f"wrote {out} ({out.stat().st_size} bytes)")
