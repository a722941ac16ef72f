"""The GAN notebook's functions (Q5): ``sample_noise``, ``Flatten``, ``Unflatten(N=-1,
C=128, H=7, W=7)``, ``initialize_weights``, ``discriminator``, ``generator``,
``bce_loss``, ``discriminator_loss``, ``generator_loss``, ``get_optimizer``,
``run_a_gan`` (loader optional: the embedded MNIST digits), ``ls_discriminator_loss``,
``ls_generator_loss``, ``build_dc_classifier``, ``build_dc_generator``, and its helpers
``show_images``, ``preprocess_img``, ``deprocess_img``, ``rel_error``,
``count_params``, ``NOISE_DIM``.

May import: ``a3ext.gan.data``, ``a3ext.gan.losses``, ``a3ext.gan.models``,
``a3ext.gan.train``, ``a3ext.reference``.
"""
from ..gan.data import deprocess_img, preprocess_img
from ..gan.losses import (bce_loss, discriminator_loss, generator_loss, ls_discriminator_loss,
                          ls_generator_loss)
from ..gan.models import (NOISE_DIM, Flatten, Unflatten, build_dc_classifier, build_dc_generator, count_params,
                          discriminator, generator, get_optimizer, initialize_weights, sample_noise)
from ..gan.train import run_a_gan, show_images
from ..reference import rel_error

__all__ = ["NOISE_DIM", "sample_noise", "Flatten", "Unflatten", "initialize_weights", "discriminator",
           "generator", "bce_loss", "discriminator_loss", "generator_loss", "get_optimizer", "run_a_gan",
           "ls_discriminator_loss", "ls_generator_loss", "build_dc_classifier", "build_dc_generator",
           "show_images", "preprocess_img", "deprocess_img", "rel_error", "count_params"]
