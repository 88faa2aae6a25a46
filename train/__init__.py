"""Training and ONNX export for batchsr models (Keras 3; TensorFlow or JAX backend).

Nothing in the runtime package imports this; it needs the ``train`` extra.
"""
