"""Model architectures, written in backend-neutral Keras 3.

Every architecture is a stack of stride-1 convolutions in low-resolution
space followed by depth-to-space, so it has a finite receptive radius and
tiles exactly. Adding an architecture is one function plus one ARCHS entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="batchsr")
class DepthToSpace(layers.Layer):
    """Sub-pixel shuffle (DCR order, as ``tf.nn.depth_to_space``), from reshape/transpose.

    Written with ``keras.ops`` only, so it runs on every backend and tf2onnx
    exports it as plain Reshape/Transpose.
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x):
        s = self.scale
        shape = ops.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        cout = c // (s * s)
        x = ops.reshape(x, (b, h, w, s, s, cout))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (b, h * s, w * s, cout))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.scale
        return (b, None if h is None else h * s, None if w is None else w * s, c // (s * s))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="batchsr")
class AddInput(layers.Layer):
    """The global skip: add the 1-channel LR input to each of the scale^2 channels.

    Broadcasting instead of repeating the input scale^2 times: the exported
    graph gets one broadcast Add, not a Tile (which onnxruntime ran in ~5 %
    of the fast model's time) plus an Add. Same values, no weights.
    """

    def call(self, x, inp):
        return ops.add(x, inp)

    def compute_output_shape(self, x_shape, inp_shape):
        return x_shape


def paper(scale: int) -> keras.Model:
    """The original ESPCN-style network as the paper's Keras example trains it.

    Conv 64 5x5, 64 5x5, 64 5x5, then scale^2 3x3; ReLU on every conv (the
    output layer included, as in the example); Orthogonal init.
    """
    inp = keras.Input((None, None, 1), name="y_lr")
    args = dict(padding="same", activation="relu", kernel_initializer="orthogonal")
    x = layers.Conv2D(64, 5, **args)(inp)
    x = layers.Conv2D(64, 5, **args)(x)
    x = layers.Conv2D(64, 5, **args)(x)
    x = layers.Conv2D(scale * scale, 3, **args)(x)
    out = DepthToSpace(scale, name="depth_to_space")(x)
    return keras.Model(inp, out, name="paper")


def skip(
    depth: int, width: int, first_kernel: int = 3, dilations: tuple[int, ...] = ()
) -> Callable[[int], keras.Model]:
    """A ``depth`` x conv3x3-``width`` ReLU stack plus a linear conv3x3-scale^2.

    ``first_kernel`` widens only the first conv: on a 1-channel input a 5x5
    costs 25 * width MACs, buying receptive field almost for free.
    ``dilations`` (one per stack conv; default all 1) spreads a conv's taps
    ``d`` pixels apart: the same MACs, ``d`` times the reach.

    The LR input, repeated scale^2 times, is added before depth-to-space, so
    the network learns only the residual over nearest-neighbour upscaling;
    the last conv starts at zero, so an untrained model is that upscaling.
    """

    rates = dilations or (1,) * depth
    if len(rates) != depth:
        raise ValueError(f"{len(rates)} dilations for {depth} convs")

    def build(scale: int) -> keras.Model:
        inp = keras.Input((None, None, 1), name="y_lr")
        x = inp
        for i in range(depth):
            x = layers.Conv2D(
                width,
                first_kernel if i == 0 else 3,
                dilation_rate=rates[i],
                padding="same",
                activation="relu",
                kernel_initializer="he_normal",
            )(x)
        # The output layers compute in float32 even under a mixed-precision training
        # policy: the residual is a few 8-bit levels, below bfloat16's resolution at Y ~ 1.
        x = layers.Conv2D(scale * scale, 3, padding="same", kernel_initializer="zeros", dtype="float32")(x)
        x = AddInput(name="add_input", dtype="float32")(x, inp)
        out = DepthToSpace(scale, name="depth_to_space", dtype="float32")(x)
        k = "" if first_kernel == 3 else f"k{first_kernel}"
        d = "d" + "".join(map(str, rates)) if dilations else ""
        return keras.Model(inp, out, name=f"skip{depth}x{width}{k}{d}")

    return build


ARCHS: dict[str, Callable[[int], keras.Model]] = {
    "paper": paper,
    "skip4x32": skip(4, 32),
    # Candidates for `fast` (<= 35K MACs per LR pixel at x3): deeper and
    # thinner at about the same cost. Widths stay multiples of 8, the block
    # onnxruntime's CPU convolutions work in, so no compute is padding.
    "skip4x32k5": skip(4, 32, first_kernel=5),
    "skip7x24": skip(7, 24),
    "skip7x24k5": skip(7, 24, first_kernel=5),
    "skip14x16": skip(14, 16),
    "skip7x64": skip(7, 64),
    # `skip4x32` with a wider field (radius 8, not 5) at the same cost: measured on the
    # realistic degradation, it did worse (docs/notebook-real-photos.md). Rates 1-2-3 reach
    # every pixel of the field (no gridding).
    "skip4x32d1231": skip(4, 32, dilations=(1, 2, 3, 1)),
}


@dataclass(frozen=True)
class ArchFacts:
    """Static facts about a built model that the runtime needs."""

    receptive_radius: int  # LR pixels of context each output pixel depends on, per side
    macs_per_lr_pixel: int
    parameters: int


def facts(model: keras.Model) -> ArchFacts:
    """Receptive radius (sum of dilation * (k-1)/2 over convs), MACs per LR pixel, parameter count."""
    radius = 0
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            if layer.strides != (1, 1):
                raise ValueError(f"{layer.name}: only stride-1 convs tile exactly")
            dh, dw = layer.dilation_rate
            if dh != dw or kh != kw:
                raise ValueError(f"{layer.name}: the radius is per side, so kernels and dilations must be square")
            radius += dh * (kh - 1) // 2
            cin = layer.kernel.shape[2]
            macs += kh * kw * cin * layer.filters
    return ArchFacts(radius, macs, int(model.count_params()))
