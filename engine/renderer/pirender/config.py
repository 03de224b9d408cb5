"""Generator hyper-parameters (``pirender-spec.md`` section 1.1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ...errors import CheckpointError
from .mapping import min_window_frames


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of the three nets. The defaults are the authors' released model (22,519,109 parameters)."""

    coeff_nc: int = 73  # numbers per frame of the motion window
    descriptor_nc: int = 256  # width of the mapping net and of z
    mapping_layers: int = 3  # dilated residual Conv1d stages
    warp_encoder_layers: int = 5
    warp_decoder_layers: int = 3
    warp_base_nc: int = 32
    edit_layers: int = 3
    edit_res_blocks: int = 2
    edit_base_nc: int = 64
    max_nc: int = 256  # channel cap: every width is min(base * 2**i, max_nc)
    image_nc: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            if int(getattr(self, f.name)) <= 0:
                raise CheckpointError(f"generator config: {f.name} must be positive")
        if self.warp_decoder_layers > self.warp_encoder_layers:
            raise CheckpointError("generator config: more warp decoder layers than encoder layers")

    @property
    def min_window_frames(self) -> int:
        """Shortest motion window the mapping net accepts (25 for the authors' 3 stages)."""
        return min_window_frames(self.mapping_layers)

    @property
    def flow_downsample(self) -> int:
        """Image size / flow size (4 for the authors' 5-down / 3-up hourglass)."""
        return 2 ** (self.warp_encoder_layers - self.warp_decoder_layers)

    @property
    def size_multiple_px(self) -> int:
        """Image sides must be multiples of this."""
        return max(2**self.warp_encoder_layers, 2**self.edit_layers)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"generator config has unknown fields: {', '.join(unknown)}")
        return cls(**{k: int(v) for k, v in data.items()})


#: A tiny generator of the same structure for fast tests and smoke runs.
TINY_CONFIG = GeneratorConfig(descriptor_nc=32, warp_base_nc=4, edit_base_nc=4, max_nc=16)
