"""The evaluation protocol every verb scores with (protocol: MATLAB-bicubic LR, PSNR/SSIM on Y
with the border cropped, NIQE, LPIPS where its weights are), the promotion gate's per-image
perceptual figures against the no-learning baselines with their paired comparison
(perceptual), and the comparison grids a person looks at (grids). It may import
pipeline.models, pipeline.data, pipeline.io, pipeline.formats, pipeline.errors and srgan;
never training, upscaling or the verbs. ``from pipeline import
scoring`` gives protocol's names."""

from pipeline.scoring.protocol import (  # noqa: F401
    LOWER_IS_BETTER,
    VALIDATION_METRICS,
    AsIsScore,
    EvalReport,
    ImageScore,
    ValidationSums,
    caption,
    evaluate_images,
    iter_images,
    list_images,
    lpips_model,
    niqe_of,
    primary,
    say_lpips_skipped,
    score_as_is,
    score_image,
    sr_figures,
)
