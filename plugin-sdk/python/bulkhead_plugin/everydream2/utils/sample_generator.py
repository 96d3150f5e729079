"""EveryDream2's ``utils.sample_generator``, as far as its plugins import it: ``clean_filename``
(textual_inversion.py names its saved rows with it). Samples themselves are the trainer's
(``bulkhead sample``; train.json ``sample_prompts``)."""


def clean_filename(filename):
    """The name with only letters, digits and spaces kept, trailing spaces dropped: safe as a file name."""
    return "".join(c for c in str(filename) if c.isalpha() or c.isdigit() or c == " ").rstrip()
