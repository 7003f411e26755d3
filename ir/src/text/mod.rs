//! The text format: a jaxpr-like printer, its parser, and Graphviz DOT output.
