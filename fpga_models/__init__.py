"""Software models of the hardware: the Clio memory node, the SuperNIC switch, Storm RDMA."""
