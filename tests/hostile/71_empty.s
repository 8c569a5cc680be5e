// case: nothing at all
// category: huge-or-malformed
// expect: input_rejected
