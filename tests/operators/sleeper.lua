print("sleeper: up")
time.sleep("30s")
