"""Stage 5: render the payload's template and run it on the punched port (``runner``); templates in ``template``."""
