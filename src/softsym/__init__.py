"""softsym: does a soft symmetry penalty make a jet tagger functionally simpler?"""

__version__ = "0.1.0"
