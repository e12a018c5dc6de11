"""Data: the GZ2 catalog and VIA annotations, their conversion into split files, the datasets a model trains on,
image I/O and the user's inputs."""
