time.sleep("700ms")
print("nap: done")
