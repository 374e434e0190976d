"""`python -m scadm` (what torchrun and accelerate launch run: `torchrun ... -m scadm train ...`)."""

from .cli import main

main()
