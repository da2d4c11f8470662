import numpy as np

from pipeline import formats
from pipeline.io.samples import write_samples


def test_samples_are_real_images_of_each_kind(tmp_path):
    written = {
        p.relative_to(tmp_path).as_posix(): formats.decode(p.read_bytes(), p.name) for p in write_samples(tmp_path)
    }
    photos = [a for k, a in written.items() if k.startswith("photos/")]
    assert len(photos) >= 4 and all(a.dtype == np.uint8 and a.shape[2] == 3 for a in photos)
    holdout = [k for k in written if k.startswith("holdout/")]
    assert len(holdout) >= 3 and not {k.split("/")[1] for k in holdout} & {
        k.split("/")[1] for k in written if k.startswith("photos/")
    }
    mri = written["medical/mri_s1045.png"]
    assert mri.dtype == np.uint16 and mri.shape == (256, 256, 1) and mri.max() > 255
    terrain = written["satellite/jacksboro_4band.tif"]
    assert terrain.dtype == np.uint16 and terrain.shape[2] == 4 and terrain.std() > 1000
