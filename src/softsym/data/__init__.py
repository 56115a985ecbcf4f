"""Jet data: files of the JetClass schema read into padded arrays or streamed, the train/val/test splits and
their loaders, and the Pythia 8 + FastJet generation (``softsym.data.pythia``).

Nothing is imported here: Pythia worker processes import ``softsym.data.pythia`` without paying for torch,
which the containers (``jets``) and the loaders need. Import from the modules themselves.
"""
