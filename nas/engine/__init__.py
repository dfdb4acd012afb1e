"""The machinery search and retrain share: device and seeding, RNG state, atomic checkpoints,
progress and TensorBoard, meters and the loss guard, run folders (ownership, lock, what a stop
leaves), signals, and whether a network takes the data's images."""
