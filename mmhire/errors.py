"""The package's own exceptions.

Every problem mmhire detects in what a user gave it (an argument, an input tensor, a checkpoint)
raises a subclass of :class:`MMHireError` whose message names the problem and the fix. The
tools catch it and print ``error: <message>`` instead of a stack trace. The subclasses also
derive from the builtin a caller would expect (``ValueError``, ``TypeError``,
``RuntimeError``), so ``except ValueError`` keeps working.
"""


class MMHireError(Exception):
    """Base of mmhire's errors about user input."""


class HireMLPConfigError(MMHireError, ValueError):
    """A HireMLP argument is invalid (unknown arch, misspelled argument, bad value)."""


class HireMLPTypeError(MMHireError, TypeError):
    """A HireMLP argument or input has the wrong type."""


class HireMLPInputError(MMHireError, ValueError):
    """An input tensor HireMLP cannot take (wrong dims or channels, empty)."""


class DeployError(MMHireError, RuntimeError):
    """An export or deployment step cannot run (missing package, existing output, bad input)."""


class CheckpointError(MMHireError, RuntimeError):
    """A checkpoint could not be read or does not fit the model; the message says why."""


class PreflightError(MMHireError, RuntimeError):
    """A config's data set, pretrained file, checkpoint or work dir is missing or unusable."""


class DemoDataError(MMHireError, RuntimeError):
    """The demo data generator refuses to write where it would touch files it did not make."""


class AmpError(MMHireError, ValueError):
    """Mixed precision was asked for in a way this device cannot run; the message says how."""


class CompareError(MMHireError, ValueError):
    """A comparison was asked for something it cannot do: an unknown backbone, a size list that
    does not parse, an output folder that already holds a report, a missing optional package."""


class ConvNeXtConfigError(MMHireError, ValueError):
    """A ConvNeXt argument is invalid (unknown arch, missing arch keys, bad out_indices)."""


class MlpMixerConfigError(MMHireError, ValueError):
    """An MlpMixer argument is invalid (unknown arch, missing arch keys, bad out_indices)."""


class MlpMixerInputError(MMHireError, ValueError):
    """An input MlpMixer cannot take: not the size it was built for."""
