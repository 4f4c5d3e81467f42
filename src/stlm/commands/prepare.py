"""PLACEHOLDER: replaced by the real implementation."""
from stlm.errors import UserError
def add_arguments(p):
    pass
def run(args):
    raise UserError("not implemented yet")
