"""The embedded default, built here from configs: `bench/` generates the benchmark's questions,
`model/` builds the tiny VLM that answers them (and tiny random models of real architectures)."""
