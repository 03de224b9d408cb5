"""The mouth readout: a thresholded ridge map from the flow's audio window to the mouth controls.

Trained on a few minutes of real speech, the flow's mean path (temperature 0) follows a new speaker's
mouth little better than the loudness gated by voice activity (cross-validated by speaker on the
talking corpus: r 0.17 against 0.14; ``benchmarks/RESULTS.md``, issue 15). A linear map of the same
audio window the flow reads generalises across speakers better, and more so with a threshold: a least-
squares fit predicts the *mean* mouth, a smooth half-open curve that rarely closes, while a speaking
mouth closes between syllables. So the mouth controls come from this readout and everything else
(head, brows, gaze) from the flow.

Input: the window of per-video-frame audio features of frame ``i`` (``FlowConfig.audio_context_frames``
frames x ``audio_feature_width``, frames ``i - k .. i + tau``, as the flow's condition), flattened
(F numbers). Output, per mouth slot ``s`` (``slots``: indices into the motion space, ``jaw_open`` and
``lip_pucker`` of the open space; 0 = the closed mouth of the frontal rest row)::

    linear_s = ((x - mean) / std) . weight_s + bias_s          (ridge regression, ``fit_ridge``)
    mouth_s  = gain_s * hinge(linear_s - threshold_s)
    hinge(u) = max(u, 0), or softness_s * log(1 + exp(u / softness_s)) when softness_s > 0

``threshold`` is a quantile of ``linear`` over the training speech (below it the mouth closes),
``softness`` rounds the corner so that the mouth closes during speech about as often as the training
speakers' mouths do, and ``gain`` restores the speakers' mouth size (the 95th percentile of the
training mouths). The
silence rule (``engine.talk.SpeechMotion``) then scales it by the speaking weight. Stored as plain data
in the flow checkpoint's ``features["mouth_readout"]`` (next to ``cmvn``), read back by
``engine.talk.load_talk_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import CheckpointError

FEATURES_KEY = "mouth_readout"


@dataclass(frozen=True)
class MouthReadout:
    """``slots`` (S,) motion slots it writes; ``mean``, ``std`` (F,) feature standardisation;
    ``weight`` (S, F), ``bias`` (S,) the linear map; ``threshold``, ``softness``, ``gain`` (S,) the
    closure threshold, its rounding and the size (module docstring); ``ridge`` and ``closed_share``:
    what it was fitted with (notes)."""

    slots: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray
    softness: np.ndarray
    gain: np.ndarray
    ridge: float = 0.0
    closed_share: float = 0.0

    def __post_init__(self) -> None:
        width, slots = self.mean.shape[0], len(self.slots)
        shapes = (
            self.std.shape,
            self.weight.shape,
            self.bias.shape,
            self.threshold.shape,
            self.softness.shape,
            self.gain.shape,
        )
        if shapes != ((width,), (slots, width), (slots,), (slots,), (slots,), (slots,)):
            raise CheckpointError(
                f"mouth readout: inconsistent shapes for {slots} slots and {width} features: std, weight, "
                f"bias, threshold, softness, gain are {', '.join(map(str, shapes))}"
            )

    @property
    def feature_width(self) -> int:
        return int(self.mean.shape[0])

    def linear(self, windows: np.ndarray) -> np.ndarray:
        """(..., F) flattened audio windows -> (..., S) the ridge map, before the threshold.

        Raises:
            ValueError: not F numbers per window.
        """
        x = np.asarray(windows, dtype=np.float64)
        if x.shape[-1] != self.feature_width:
            raise ValueError(
                f"mouth readout: windows of {x.shape[-1]} numbers, {self.feature_width} expected"
            )
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """(..., F) flattened audio windows -> (..., S) mouth values (>= 0; module docstring)."""
        return self.gain * _hinge(self.linear(windows) - self.threshold, self.softness)

    def closing(
        self, speech_windows: np.ndarray, targets: np.ndarray, closed_share: float, softness: float = 0.0
    ) -> MouthReadout:
        """This readout with the threshold at the ``closed_share`` quantile of its linear map over
        ``speech_windows`` (N, F), the softness ``softness`` times that map's standard deviation, and
        the gain that gives the 95th percentile of ``targets`` (N, S), the real mouths of those frames."""
        linear = self.linear(speech_windows)
        threshold = np.quantile(linear, closed_share, axis=0)
        rounding = softness * linear.std(axis=0)
        opened = np.percentile(_hinge(linear - threshold, rounding), 95, axis=0)
        gain = np.percentile(targets, 95, axis=0) / np.maximum(opened, 1e-6)
        return replace(
            self, threshold=threshold, softness=rounding, gain=gain, closed_share=float(closed_share)
        )

    def to_features(self) -> dict[str, Any]:
        return {
            "slots": list(self.slots),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "threshold": self.threshold.tolist(),
            "softness": self.softness.tolist(),
            "gain": self.gain.tolist(),
            "ridge": self.ridge,
            "closed_share": self.closed_share,
        }

    @classmethod
    def from_features(cls, features: dict[str, Any]) -> MouthReadout | None:
        """The readout a flow checkpoint's ``features`` dict holds, or None.

        Raises:
            CheckpointError: malformed.
        """
        data = features.get(FEATURES_KEY)
        if not data:
            return None
        try:
            arrays = {
                k: np.asarray(data[k], dtype=np.float64)
                for k in ("mean", "std", "weight", "bias", "threshold", "softness", "gain")
            }
            return cls(
                tuple(int(s) for s in data["slots"]),
                **arrays,
                ridge=float(data.get("ridge", 0.0)),
                closed_share=float(data.get("closed_share", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed mouth readout in the checkpoint ({exc})") from None


def fit_ridge(windows: np.ndarray, targets: np.ndarray, slots: tuple[int, ...], ridge: float) -> MouthReadout:
    """Ridge regression of ``targets`` (N, S) on ``windows`` (N, F) standardised, the bias not
    penalised; ``ridge``: the penalty on the standardised weights (in units of frames). No threshold
    (0), a hard hinge and gain 1: :meth:`MouthReadout.closing` sets them."""
    x = np.asarray(windows, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    y_mean = y.mean(axis=0)
    weight = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - y_mean)).T
    zeros = np.zeros(len(slots))
    return MouthReadout(tuple(slots), mean, std, weight, y_mean, zeros, zeros, zeros + 1.0, float(ridge))


def _hinge(u: np.ndarray, softness: np.ndarray) -> np.ndarray:
    """max(u, 0) where ``softness`` is 0, else its smooth version softness * log(1 + exp(u / softness))."""
    soft = np.asarray(softness, dtype=np.float64)
    scale = np.where(soft > 0, soft, 1.0)
    return np.where(soft > 0, scale * np.logaddexp(0.0, u / scale), np.maximum(u, 0.0))


__all__ = ["FEATURES_KEY", "MouthReadout", "fit_ridge"]
