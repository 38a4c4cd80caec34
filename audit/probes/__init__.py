"""Zero-shot model probes (`fairsift probe`): FairFace accuracy and harmful labels (CLIP paper section 7.1),
geography (Country211 classes) and an image-text embedding association test (WEAT / iEAT)."""

from audit.probes.options import ProbeOptions
from audit.probes.run import run_probes

__all__ = ["ProbeOptions", "run_probes"]
