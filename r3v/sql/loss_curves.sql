-- Per optimizer step of each training (iteration 0 = the seed warm-up): learning rate, gradient
-- norm, the total loss (loss_total) and each term's loss (loss_<term>: token means over the term's labelled
-- tokens; NULL when a step's batch held none) and labelled tokens (tokens_<term>), for every term
-- of the objective (r3v/objective.py: sft, refine, select, sq).
CREATE OR REPLACE VIEW loss_curves AS
SELECT iteration, step, epoch, lr, grad_norm, COLUMNS('^loss_[a-z]+$'), COLUMNS('^tokens_[a-z]+$'), seconds
FROM src_train_log
WHERE iteration <= coalesce(getvariable('r3v_upto'), 2147483647)
ORDER BY iteration, step;
