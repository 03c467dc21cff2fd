print("myelin-bench")
