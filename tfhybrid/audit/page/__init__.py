"""The parts of the backward-pass page (:mod:`tfhybrid.audit.html`): what the audit saw
(``source``), the numbers the report does not hold (``trace``), the page as data
(``build``), its words (``words``) and its packed arrays (``arrays``)."""
