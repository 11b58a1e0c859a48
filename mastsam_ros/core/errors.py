"""Project exceptions: one family, :class:`MastSamError` (a ``ValueError``), so each front end catches one type."""


class MastSamError(ValueError):
    """Base class of every error the core raises on purpose."""


class FrameError(MastSamError):
    """A frame the tracker cannot use (empty, wrong dtype, wrong channel count...)."""


class FrameTooSmall(FrameError):
    """A frame smaller than the tracker or one of its backends can process."""


class ConfigError(MastSamError):
    """A config value outside its allowed range or choices, or an unknown key."""


class BackendUnavailable(MastSamError):
    """An optional backend was chosen but its package (or a CUDA device) is missing."""


class CheckpointError(MastSamError):
    """A model checkpoint is missing, unreadable, or does not match the architecture."""


class BadImage(MastSamError):
    """An input image a front end cannot use: unsupported encoding, empty, data shorter than ``step`` x height, or an
    undecodable compressed image. ``kind`` names the diagnostics counter it raises (``bad_encoding``, ``bad_size``,
    ``bad_data``). Raised by the ROS conversions (node and ``mastsam-bag``), never by the core itself."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
