"""Synthetic faces, one row per identity, with gender and the region map of the last image of each row.

The gallery draws this figure when the docs are built (``.. plot:: scripts/faces_grid.py``); run it yourself with
``python docs/scripts/faces_grid.py`` to see it in a window.
"""
import matplotlib.pyplot as plt
import numpy as np

from lrp_faces.faces import REGIONS, synthetic_faces

IDENTITIES, IMAGES, SIZE, SEED = 6, 6, 64, 0

faces = synthetic_faces(IDENTITIES, IMAGES, size=SIZE, seed=SEED)
images = faces.images.numpy().transpose(0, 2, 3, 1)
region_colours = plt.get_cmap("tab10")(np.arange(len(REGIONS)))[:, :3]
figure, axes = plt.subplots(IDENTITIES, IMAGES + 1, figsize=(1.6 * (IMAGES + 1), 1.7 * IDENTITIES))
for row in range(IDENTITIES):
    for column in range(IMAGES + 1):
        axis = axes[row, column]
        index = row * IMAGES + min(column, IMAGES - 1)
        if column < IMAGES:
            axis.imshow(images[index], interpolation="nearest")
        else:  # the region map of the last image of the row
            axis.imshow(region_colours[faces.regions[index]], interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
    gender = faces.class_names("gender")[faces.gender[row * IMAGES]]
    axes[row, 0].set_ylabel(f"{faces.class_names('identity')[row]}\n{gender}", fontsize=10)
axes[0, IMAGES].set_title("regions", fontsize=10)
handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in region_colours]
figure.legend(handles, REGIONS, loc="lower center", ncol=len(REGIONS), fontsize=8, frameon=False)
figure.suptitle(f"synthetic_faces({IDENTITIES}, {IMAGES}, size={SIZE}, seed={SEED}): one identity per row")
figure.tight_layout(rect=(0, 0.03, 1, 0.97))

if __name__ == "__main__":
    plt.show()
