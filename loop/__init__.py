"""The loop: monitor -> analyze -> decide -> execute -> verify -> learn, one module per step.

``loop.daemon.Engine`` takes findings in and drives each incident through the steps
(``loop.steps``); what people do to incidents is ``loop.operations``. The typed messages
between steps live in the kernel (``kernel.models``).
"""
