"""Train the bundled Keras Fashion-MNIST model (models/fashion_keras) from scratch on CPU.

    .venv/bin/python tools/train_fashion_keras.py        # 4 epochs, ~3-5 minutes on 2 cores

The network is written the way Keras users write theirs: raw 0..255 pixels in, a
``Rescaling(1/255)`` layer first, Conv2D -> BatchNormalization, SeparableConv2D -> BN,
DepthwiseConv2D -> BN (the pattern tf2onnx leaves as Mul+Add), Dropout, a softmax head,
``model.fit``. It exercises everything the Keras frontend must handle: a preprocessing
layer to lift into the spec, BN to fold after three kinds of convolution, and a dropout
layer that must be off in inference.

Writes ``model.keras`` (Keras 3 zip), ``model.h5`` (legacy HDF5, the same weights),
``spec.json`` (raw gray pixels in: scale 1, mean 0, std 1 — the model scales itself),
``labels.txt`` and ``training.json`` next to each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edgeinfer.data.datasets import FASHION_LABELS, load_fashion_mnist  # noqa: E402

MODEL_DIR = ROOT / "models" / "fashion_keras"
SPEC = {"size": [28, 28], "frame_color": "BGR", "model_color": "GRAY", "resize": "stretch",
        "interpolation": "linear", "antialias": False, "scale": 1.0, "mean": [0.0],
        "std": [1.0], "layout": "NHWC", "pad_value": 0.0, "version": 1}


def build_model():
    """The network; layer names are stable so that tests and lint messages can name them."""
    import keras
    from keras import layers

    inp = keras.Input((28, 28, 1), name="pixels")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inp)
    x = layers.Conv2D(24, 3, padding="same", use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.SeparableConv2D(48, 3, padding="same", use_bias=False, name="sep2")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)                       # 14x14
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw3")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Conv2D(64, 1, use_bias=False, name="pw3")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn4")(x)
    x = layers.ReLU(name="relu4")(x)
    x = layers.MaxPooling2D(2, name="pool4")(x)                       # 7x7
    x = layers.SeparableConv2D(96, 3, padding="same", use_bias=False, name="sep5")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn5")(x)
    x = layers.ReLU(name="relu5")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="fashion_keras")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    xtr = xtr[..., None].astype(np.float32)   # raw 0..255: the model rescales
    xte = xte[..., None].astype(np.float32)

    model = build_model()
    steps = args.epochs * -(-len(xtr) // args.batch_size)
    lr = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = []

    class Log(keras.callbacks.Callback):
        t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            history.append({"epoch": epoch + 1, "loss": round(float(logs["loss"]), 5),
                            "train_acc": round(float(logs["accuracy"]), 5),
                            "test_acc": round(float(logs["val_accuracy"]), 5),
                            "seconds": round(time.time() - self.t0, 1)})
            print(history[-1], flush=True)

    t0 = time.time()
    model.fit(xtr, ytr, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
              validation_data=(xte, yte), callbacks=[Log()])
    seconds = time.time() - t0
    probs = model.predict(xte, batch_size=512, verbose=0)
    acc = float((probs.argmax(-1) == yte).mean())

    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.keras")
    model.save(args.out / "model.h5")   # legacy HDF5 (Keras warns; that is the point)
    (args.out / "spec.json").write_text(json.dumps(SPEC, indent=2) + "\n")
    (args.out / "labels.txt").write_text("\n".join(FASHION_LABELS) + "\n")
    info = {
        "model": "fashion_keras (tools/train_fashion_keras.py:build_model)",
        "dataset": "Fashion-MNIST, 60000 train (all) / 10000 test",
        "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": "Adam, cosine decay 3e-3 -> 6e-5, sparse categorical cross-entropy, "
                     "BN momentum 0.9, no augmentation",
        "seconds": round(seconds, 1), "test_accuracy": round(acc, 4),
        "parameters": int(model.count_params()),
        "seed": 0, "threads": 2, "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__, "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "command": "python tools/train_fashion_keras.py " + shlex.join(sys.argv[1:]),
        "history": history,
    }
    (args.out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"test accuracy {acc:.4f} in {seconds:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
