"""The machinery search and retrain share: device and seeding, RNG state, atomic checkpoints,
progress and TensorBoard, meters and the loss guard, the run folder (ownership, lock, its
checkpoint and resume checks, what a stop leaves: :mod:`nas.engine.run_folder`), signals, and
whether a network takes the data's images."""
