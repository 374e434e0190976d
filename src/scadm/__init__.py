"""scadm: controllable face synthesis and editing with semantic latent diffusion."""

__version__ = "0.1.0"
