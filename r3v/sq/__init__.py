"""Self-questioning, the papers' add-ons to the R3V loop.

- `selfq`: SQ-LLaVA's virtual user `[vusr]`: multi-turn samples whose question tokens are
  trained (L_SQ), and asking questions about an image at test time;
- `prototype`: SQ-LLaVA's prototype extractor (clustered visual tokens added to the projector's output);
- `qar`: SQ-InstructBLIP's Questioner -> Answerer -> Reasoner chains, sampled and trained as roles.
"""
