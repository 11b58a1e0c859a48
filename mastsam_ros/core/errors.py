"""Project exceptions. All derive from ``ValueError`` so callers can catch bad input broadly."""


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
