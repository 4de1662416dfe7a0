time.sleep("20s")
print("wall: survived")
