// Placeholder: replaced by the llama2.c header reader.
