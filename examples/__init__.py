"""Networks and data a user brings: each file defines ``build()`` (a :class:`sim.nn.Network`)
and ``load()`` (a :class:`sim.nn.Dataset`), the form ``sparta train --network-file`` and
``sparta replay --network-file`` take."""
