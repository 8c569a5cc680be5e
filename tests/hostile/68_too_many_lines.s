// case: 20000 lines of nop (limit 10000)
// category: huge-or-malformed
// expect: input_rejected
// repeat: 20000
    nop
