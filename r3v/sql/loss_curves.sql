-- Per optimizer step of each training (iteration 0 = the seed warm-up): learning rate, gradient
-- norm, the total loss and each loss (token means over the kind's labelled tokens; NULL when a
-- step's batch held no example of that kind) and the labelled tokens per kind.
CREATE OR REPLACE VIEW loss_curves AS
SELECT iteration, step, epoch, lr, grad_norm, loss_total, loss_sft, loss_refine, loss_select,
       tokens_sft, tokens_refine, tokens_select, seconds
FROM src_train_log
WHERE iteration <= coalesce(getvariable('r3v_upto'), 2147483647)
ORDER BY iteration, step;
