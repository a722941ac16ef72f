"""GANs for the assignment's fifth part: vanilla, least-squares, DCGAN and WGAN-GP on
real digits, a sample-quality metric, and the semi-supervised GAN classifier.

The assignment's API (names and semantics): :func:`sample_noise`,
:func:`discriminator`, :func:`generator`, :func:`discriminator_loss`,
:func:`generator_loss`, :func:`ls_discriminator_loss`, :func:`ls_generator_loss`,
:func:`build_dc_classifier`, :func:`build_dc_generator`, :func:`initialize_weights`,
:func:`get_optimizer`, :func:`run_a_gan`; plus WGAN-GP losses
(:func:`wgan_discriminator_loss`, :func:`wgan_generator_loss`,
:func:`gradient_penalty`), the training driver (:func:`build_gan`,
:func:`train_gan`, :class:`GANTrainer`, checkpoints), data batching
(:class:`BatchLoader`, :func:`load_digits`), the quality metric
(:mod:`a3ext.gan.metrics`) and :mod:`a3ext.gan.semi_supervised`.
Submodules: ``models``, ``losses``, ``data``, ``train``, ``metrics``,
``semi_supervised``, ``cli``.

May import: ``a3ext.gan.data``, ``a3ext.gan.losses``, ``a3ext.gan.models``,
``a3ext.gan.train``.
"""
from __future__ import annotations

from .data import BatchLoader, as_unit_images, load_digits
from .losses import (GRADIENT_PENALTY_WEIGHT, bce_loss, discriminator_loss, generator_loss,
                     gradient_penalty, ls_discriminator_loss, ls_generator_loss,
                     wgan_discriminator_loss, wgan_generator_loss)
from .models import (IMAGE_SIZE, NOISE_DIM, Flatten, Unflatten, build_dc_classifier,
                     build_dc_generator, count_params, discriminator, generator, get_optimizer,
                     initialize_weights, sample_noise)
from .train import (CHECKPOINT_FORMAT, KINDS, RECIPES, GANTrainer, build_gan, generate, load_checkpoint,
                    load_generator, plot_losses, run_a_gan, run_gan, save_checkpoint, save_image_grid,
                    train_gan)

__all__ = [
    # assignment API
    "NOISE_DIM", "IMAGE_SIZE", "sample_noise", "Flatten", "Unflatten", "initialize_weights",
    "discriminator", "generator", "build_dc_classifier", "build_dc_generator", "get_optimizer",
    "count_params", "bce_loss", "discriminator_loss", "generator_loss", "ls_discriminator_loss",
    "ls_generator_loss", "run_a_gan", "run_gan",
    # WGAN-GP
    "GRADIENT_PENALTY_WEIGHT", "wgan_discriminator_loss", "wgan_generator_loss", "gradient_penalty",
    # training driver, data
    "KINDS", "RECIPES", "CHECKPOINT_FORMAT", "build_gan", "GANTrainer", "train_gan", "save_checkpoint",
    "load_checkpoint", "load_generator", "generate", "save_image_grid", "plot_losses",
    "BatchLoader", "as_unit_images", "load_digits",
]
