"""Batched, seeded HR -> LR degradations as small tensor functions: bicubic, Real-ESRGAN's two-round `realistic`,
satellite and MRI, their pieces (kernels, filtering, resize, noise, JPEG, USM) and training pairs cut after the
degradation. Pure PyTorch; the modules here import their siblings directly, never this package, which only gathers
the public names."""

from srgan.degrade.base import CPU_PIECE_PIXELS, Degradation, Range
from srgan.degrade.bicubic import Bicubic
from srgan.degrade.build import DEGRADATIONS, build_degradation
from srgan.degrade.compress import jpeg
from srgan.degrade.convolve import CHUNK, blur, filter_per_sample
from srgan.degrade.kernels import KERNEL_TYPES, gaussian_kernels, mixed_kernels, sinc_kernels
from srgan.degrade.mri import MRI
from srgan.degrade.noise import add_noise
from srgan.degrade.pairs import crop_size, pad_to, training_pair
from srgan.degrade.realistic import Realistic, RealisticPlan
from srgan.degrade.resample import RESIZE_DIRECTIONS, RESIZE_MODES, resize
from srgan.degrade.rounds import FIRST_ROUND, SECOND_ROUND, RoundPlan, RoundSettings
from srgan.degrade.satellite import Satellite
from srgan.degrade.sharpen import usm_sharp

__all__ = [
    "CHUNK",
    "CPU_PIECE_PIXELS",
    "DEGRADATIONS",
    "FIRST_ROUND",
    "KERNEL_TYPES",
    "MRI",
    "RESIZE_DIRECTIONS",
    "RESIZE_MODES",
    "SECOND_ROUND",
    "Bicubic",
    "Degradation",
    "Range",
    "Realistic",
    "RealisticPlan",
    "RoundPlan",
    "RoundSettings",
    "Satellite",
    "add_noise",
    "blur",
    "build_degradation",
    "crop_size",
    "filter_per_sample",
    "gaussian_kernels",
    "jpeg",
    "mixed_kernels",
    "pad_to",
    "resize",
    "sinc_kernels",
    "training_pair",
    "usm_sharp",
]
