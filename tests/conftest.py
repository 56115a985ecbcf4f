import os

import pytest
import torch

os.environ.setdefault("CI", "true")  # quiet progress bars
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_jets():
    from softsym.data.synthetic import synthetic_jets

    return synthetic_jets(128, max_particles=24, seed=1)
