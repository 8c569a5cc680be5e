// case: only blanks
// category: huge-or-malformed
// expect: input_rejected
   
	
  
