"""babysit for the trainers people already use, without copying their loops.

    from babysit.integrations.huggingface import BabysitCallback, train
    trainer = Trainer(..., callbacks=[BabysitCallback(day="200 steps")])
    train(trainer)                      # instead of trainer.train(): survives rollbacks

    from babysit.integrations.lightning import BabysitCallback, fit
    trainer = pl.Trainer(..., callbacks=[BabysitCallback(day="1 epoch")])
    fit(trainer, model, train_loader)   # instead of trainer.fit(...)

Each framework writes its own checkpoint at a day's end; babysit adds its manifest (every file's
size and sha256, in a small day file that is itself checked) and loads nothing that fails it.
A rollback stops the framework's fit at a step boundary and enters it again from the day's
checkpoint. The modules import their framework lazily: ``import babysit.integrations`` costs
nothing.
"""
