"""Training on paired cases and validating a model against its card's targets.

Training, bottom up: :mod:`.config` (what defines a run), :mod:`.cases` (case folders on the model
grid), :mod:`.augment` and :mod:`.sampler` (training patches), :mod:`.loss`, :mod:`.schedule`
(learning rate, loss blend, frozen batch norm), :mod:`.card` (the model card written),
:mod:`.parent` (fine-tuning from an installed model), :mod:`.checkpoint` (resume) and :mod:`.loop`
(:func:`~.loop.train`: set-up, epochs, validation, the model folder). :mod:`.validation` scores a
finished model.
"""
