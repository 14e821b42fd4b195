"""``python -m spikeformer.cli``: the same as the ``spikeformer`` command."""

from spikeformer.cli import main

main()
